"""Reconciliation: RosDomofon accounts and their connections into Bitrix24 contacts (flow 3).

One module per step: ``sources`` reads RosDomofon, ``mapping`` turns an account into the contact it
should be, ``fields`` ensures the custom fields, ``fingerprint`` skips accounts that did not change,
``portal`` reads our contacts back from Bitrix24, ``plan`` diffs, ``apply`` writes in batches,
``report`` records the outcome, ``engine`` runs the steps in order, ``lock`` keeps runs apart and
``run`` is the ``reconcile.run`` task. See ``tasks/reconcile/README.md``.
"""
