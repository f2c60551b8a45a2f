"""Where each rank runs: Horovod's world and its collectives behind ``distributed.World``, and
the device each rank trains on, with the refusals when a GPU job would land on a CPU
(``devices``)."""
