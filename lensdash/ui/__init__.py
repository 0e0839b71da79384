"""The Streamlit UI layer: every ``st.*`` call of lensdash lives in this package (and app.py).

Each section is a function that draws one part of the page; ``app.py`` composes them.
"""
