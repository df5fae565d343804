from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="ensemble",
    version="0.1.0",
    description="Run and track ensembles of simulations on HPC allocations and workstations",
    long_description=Path(__file__).with_name("README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    packages=find_packages(include=["ensemble", "ensemble.*"]),
    package_data={"ensemble.executors": ["spawner.c"]},
    python_requires=">=3.10",
    install_requires=["pyyaml>=5.1", "pandas>=1.5", "rich>=13"],
    extras_require={
        "mpi": ["mpi4py>=3.1"],
        "flux": ["flux-python"],
        "jinja": ["jinja2>=3.0"],
        "plots": ["matplotlib>=3.5"],
        "params": ["scipy>=1.7"],
        "parquet": ["pyarrow>=10"],
        "dev": ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6", "jinja2>=3.0", "sphinx>=7", "ruff", "matplotlib>=3.5",
                "scipy>=1.7", "selenium>=4.11", "pyarrow>=10"],
    },
    entry_points={"console_scripts": ["ensemble=ensemble.cli:main"]},
    scripts=[],
)
