"""Fully synthetic Gaussian collapse against its exact laws: python studies/gaussian_collapse.py [--scale cpu]."""

import madloop.studies

if __name__ == "__main__":
    madloop.studies.main("gaussian-collapse")
