"""Open311 GeoReport v2 under ``/open311/v2/``: civic reporting clients post and follow reports.

The mapping between the standard and aduan (service = substance, request = complaint, status =
the case's status) is described in ``docs/open311.md``.
"""
