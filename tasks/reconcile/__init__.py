"""Reconciliation: RosDomofon accounts and their connections into Bitrix24 contacts (flow 3).

One module per step: ``sources`` reads RosDomofon, ``mapping`` turns an account into the contact it
should be, ``fingerprint`` skips accounts that did not change, ``portal`` reads our contacts back
from Bitrix24, ``plan`` diffs, ``apply`` writes in batches, ``report`` records the outcome and
``run`` ties them together as the ``reconcile.run`` task under a run lock.
"""
