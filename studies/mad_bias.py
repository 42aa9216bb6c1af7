"""E2, MAD with and without sampling bias (Gaussian, GMM, DDPM): python studies/mad_bias.py [--scale cpu]."""

import madloop.studies

if __name__ == "__main__":
    madloop.studies.main("mad-bias")
