"""GenerativeLoss as a patch series for someone else's Caffe tree.

export.py writes the series (git format-patch files, one combined diff, the
receiver's README and apply_generative_loss.py) from this repository's
committed layer files and its caffe.proto patch; apply_generative_loss.py is
shipped with it and checks the receiver's tree before applying (stdlib only).
"""
