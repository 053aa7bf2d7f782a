"""Family templates of the offline author: each module is a complete, valid scenario script.

Every ``<family>.py`` here defines ``build(seed, scale) -> Scenario`` and a literal ``DESIGN`` block of
structural choices near its top. `scenario_lib.authoring.offline` reads these files as text and rewrites the
``DESIGN`` block per author seed; importing this package stays cheap (no build123d) so the author
can read the templates without loading CAD code.
"""
