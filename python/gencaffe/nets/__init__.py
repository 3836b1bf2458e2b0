"""Net definitions (pycaffe NetSpec): one module per architecture writes all
of its variants as prototxt."""
