"""E1: SIMS on 2D Gaussian data (SPEC section 4). Same as `madloop study sims-gaussian-2d`."""

from madloop.studies import main

if __name__ == "__main__":
    main("sims-gaussian-2d")
