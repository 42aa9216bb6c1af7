"""Remedies for MADness side by side: python studies/remedies.py [--scale cpu]."""

import madloop.studies

if __name__ == "__main__":
    madloop.studies.main("remedies")
