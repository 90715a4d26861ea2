"""python -m vae.evaluate: the command's name; the tool is vae/tools/evaluate.py."""

from vae.tools.evaluate import main

if __name__ == "__main__":
    main()
