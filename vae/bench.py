"""python -m vae.bench: the command's name; the tool is vae/tools/bench.py."""

from vae.tools.bench import main

if __name__ == "__main__":
    main()
