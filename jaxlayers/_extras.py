"""The error for an absent optional dependency (the 'examples' extra: matplotlib, tqdm,
scikit-learn), shared by the demos and the models' plotting helpers."""


def missing_extra(exc: ImportError) -> ImportError:
    """The ImportError to raise when an 'examples' dependency is absent."""
    return ImportError(f"jaxlayers' demos and plots need the 'examples' extra ({exc.name} "
                       f"is missing): pip install 'jaxlayers[examples]'")
