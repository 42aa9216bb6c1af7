"""E2 on images, MAD of an EDM U-Net on digit images with and without bias: python studies/mad_images.py [--scale cpu]."""

import madloop.studies

if __name__ == "__main__":
    madloop.studies.main("mad-images")
