"""python -m vae.report: the command's name; the tool is vae/tools/report/ (its __init__.py)."""

from vae.tools.report import main

if __name__ == "__main__":
    main()
