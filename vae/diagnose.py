"""python -m vae.diagnose: the command's name; the tool is vae/tools/diagnose.py."""

from vae.tools.diagnose import main

if __name__ == "__main__":
    main()
