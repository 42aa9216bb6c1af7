"""E3, the fresh data loop and its effective sample size (Gaussian): python studies/mad_fresh.py [--scale cpu]."""

import madloop.studies

if __name__ == "__main__":
    madloop.studies.main("mad-fresh")
