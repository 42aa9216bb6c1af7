"""Accumulating past synthetic data vs replacing it: python studies/accumulate.py [--scale cpu]."""

import madloop.studies

if __name__ == "__main__":
    madloop.studies.main("accumulate")
