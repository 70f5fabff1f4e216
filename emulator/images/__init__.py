"""Building images through the ``docker`` command line, standard library only: the base image (``debootstrap``), worker images (``build``), and ``python -m emulator.images`` (``__main__``)."""
