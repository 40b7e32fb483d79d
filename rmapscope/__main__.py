"""``python -m rmapscope``, and the application file for ``spark-submit`` (see README)."""

from rmapscope.cli import main

if __name__ == "__main__":
    main()
