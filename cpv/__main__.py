"""``python -m cpv``: the same as the ``cpv`` command."""

from cpv.cli.main import main

if __name__ == "__main__":
    main()
