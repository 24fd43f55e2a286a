"""The `spot` command line."""
import sys


def main(argv=None):
    print("spot: nothing yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
