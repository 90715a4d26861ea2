"""python -m vae.sample: the command's name; the tool is vae/tools/sample.py."""

from vae.tools.sample import main

if __name__ == "__main__":
    main()
