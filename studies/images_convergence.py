"""Converged bases, the EDM U-Net's FID vs training images on digits and MNIST: python studies/images_convergence.py [--scale cpu]."""

import madloop.studies

if __name__ == "__main__":
    madloop.studies.main("images-convergence")
