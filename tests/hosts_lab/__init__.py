"""The hosts lab: the service as it grows past one machine (DESIGN.md), on this machine.

Network namespaces are the hosts, on a bridge of the lab's own; PostgreSQL and Redis run in
the root namespace on the bridge's address; each host runs ``concert serve`` and ``concert
scheduler``; HAProxy 2.6, in a namespace of its own, spreads the customers over the hosts and
checks each one's ``/readyz``. Five scenarios run on it (`scenarios`) and print one table
(`report`); everything made is removed afterwards, even on failure or Ctrl-C (`lab`).

``python -m tests.hosts_lab`` or ``nox -s hosts`` runs it all (root and haproxy needed);
``tests/integration/test_hosts_lab.py`` runs a short version.
"""
