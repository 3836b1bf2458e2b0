"""A small tree in Tiny ImageNet's layout (CS231n's tiny-imagenet-200), drawn
here so that no test needs the real download:

    ROOT/wnids.txt                        the class order, deliberately unsorted
    ROOT/words.txt                        "wnid<TAB>words" for more synsets than the classes
    ROOT/train/<wnid>/<wnid>_boxes.txt    (ignored by the data tool, as in the download)
    ROOT/train/<wnid>/images/<wnid>_<k>.JPEG
    ROOT/val/val_annotations.txt          "val_<n>.JPEG<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1"
    ROOT/val/images/val_<n>.JPEG

Every image is 64x64; the first train image of the first class is greyscale
(Tiny ImageNet has about 1.7 % of them). Each class has its own mean colour,
so a net can tell them apart.
"""
import io
import os

import numpy as np

WNIDS = ("n09999003", "n09999001", "n09999002", "n09999004", "n09999005")
SIZE = 64


def jpeg_bytes(pixels):
    from PIL import Image
    buffer = io.BytesIO()
    mode = "L" if pixels.ndim == 2 else "RGB"
    Image.fromarray(pixels, mode).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def image(rng, label, grey=False):
    colour = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 151 + 30) % 256])
    pixels = np.clip(colour + rng.normal(0, 25, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    return pixels.mean(axis=2).astype(np.uint8) if grey else pixels


def make(root, classes=3, train_per_class=4, val_per_class=2, seed=1):
    """Write the tree under root (a str or Path); returns the class wnids in label order."""
    root = str(root)
    rng = np.random.RandomState(seed)
    wnids = list(WNIDS[:classes])
    os.makedirs(os.path.join(root, "val", "images"))
    with open(os.path.join(root, "wnids.txt"), "w") as handle:
        handle.writelines(w + "\n" for w in wnids)
    with open(os.path.join(root, "words.txt"), "w") as handle:
        for number, wnid in enumerate(sorted(WNIDS + ("n00000001",))):
            handle.write("%s\tthing %d, stuff\n" % (wnid, number))
    for label, wnid in enumerate(wnids):
        folder = os.path.join(root, "train", wnid, "images")
        os.makedirs(folder)
        with open(os.path.join(root, "train", wnid, "%s_boxes.txt" % wnid), "w") as boxes:
            for k in range(train_per_class):
                name = "%s_%d.JPEG" % (wnid, k)
                with open(os.path.join(folder, name), "wb") as handle:
                    handle.write(jpeg_bytes(image(rng, label, grey=(label == 0 and k == 0))))
                boxes.write("%s\t0\t0\t63\t63\n" % name)
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as annotations:
        for n in range(val_per_class * classes):
            label = n % classes
            name = "val_%d.JPEG" % n
            with open(os.path.join(root, "val", "images", name), "wb") as handle:
                handle.write(jpeg_bytes(image(rng, label)))
            annotations.write("%s\t%s\t1\t2\t60\t61\n" % (name, wnids[label]))
    return wnids
