"""From TFRecord shards to a trained, evaluated, exported model (`python -m trainer.task`)."""
