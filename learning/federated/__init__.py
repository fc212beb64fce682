"""Federated learning on the same air, FLEP's protections, and the attack that tests them.

One responsibility per module:

* :mod:`~learning.federated.updates` - model parameters as flat vectors and one user's local
  training round (the model update it sends);
* :mod:`~learning.federated.aggregation` - how the server obtains the weighted sum of updates:
  ``"digital"`` (exact sum over the link) or ``"ota"`` (each group's updates superposed on the
  PHY through :mod:`learning.channels` with :mod:`phy.power`'s closed-form power control),
  with the channel uses and digital bytes each costs;
* :mod:`~learning.federated.fedavg` - the FedAvg loop (partial participation, non-IID splits
  from :func:`learning.data.split_users`, accuracy per round and per channel use);
* :mod:`~learning.federated.cipher` - FLEP's keyed three-layer image cipher (permutation,
  diffusion, substitution; plaintext-bound keystream; authenticated);
* :mod:`~learning.federated.cipher_quality` - entropy, NPCR/UACI with Wu-Noonan-Agaian
  critical values, adjacent-pixel correlation, histogram chi-square, key sensitivity;
* :mod:`~learning.federated.cipher_attack` - the classic chosen-plaintext attack on
  permutation-diffusion image ciphers;
* :mod:`~learning.federated.vault` - a user's images encrypted at rest (FLEP's data tier);
* :mod:`~learning.federated.shamir` - Shamir secret sharing over a prime field;
* :mod:`~learning.federated.secagg` - secure aggregation after Bonawitz et al. (2017);
* :mod:`~learning.federated.gradient_inversion` - DLG / iDLG / "Inverting Gradients" on what
  the server sees;
* :mod:`~learning.federated.update_audit` - that attack on one view of an aggregation (one
  user's update, the secure or over-the-air mean), scored per victim user (the run's audit);
* :mod:`~learning.federated.method` - FedAvg as a :class:`~learning.methods.base.Method`
  (over the air, or digital / securely aggregated over the declared model-update uplink).
"""
