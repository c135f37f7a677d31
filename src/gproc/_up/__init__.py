"""``gproc up``: run a Procfile under supervision.

One module per job, pure logic first: :mod:`.procfile`, :mod:`.dotenv` and :mod:`.config` read the
files; :mod:`.plan` decides what runs with which environment; :mod:`.policy` decides what happens
when something exits; :mod:`.output` formats what the user sees. :mod:`.supervisor` is the only
part that touches processes.
"""
