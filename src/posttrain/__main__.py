"""`python -m posttrain`: the same Hydra app as the `posttrain` console script."""

from posttrain.cli import main

if __name__ == "__main__":
    main()
