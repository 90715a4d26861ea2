"""python -m vae.report: the command's name; the tool is vae/tools/report.py."""

from vae.tools.report import main

if __name__ == "__main__":
    main()
