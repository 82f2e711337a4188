"""Job submission to Cloud TPU VMs (``python -m launch.tpu_vm``)."""
