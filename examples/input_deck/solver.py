"""A stand-in solver: reads ``solver.in`` in its working directory, writes ``ensemble_result.json``."""
import json
from pathlib import Path

deck = dict(line.split("=", 1) for line in Path("solver.in").read_text().splitlines() if "=" in line
            and not line.startswith("#"))
deck = {key.strip(): value.strip() for key, value in deck.items()}
density = float(Path(deck["material"]).read_text().split()[1])
cells = int(Path(deck["mesh"]).read_text().split()[3])
reynolds = density * float(deck["resolution"]) * cells / float(deck["viscosity"])
json.dump({"reynolds": reynolds}, open("ensemble_result.json", "w"))
