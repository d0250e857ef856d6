"""`python -m training.label POOL --out DATASET`: see `training.label.page`."""

import sys

from training.label.page import main

if __name__ == "__main__":
    sys.exit(main())
