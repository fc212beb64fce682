"""Learning layer: data sets and user splits (:mod:`learning.data`), semantic encoders and
heads (:mod:`learning.models`), mixing-weight policies and label algebra
(:mod:`learning.mixup`), the user-to-server channel (:mod:`learning.channels`) and the
training loops with their step-level API (:mod:`learning.training`)."""
