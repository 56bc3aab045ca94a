"""Encoders (TF Hub BERT, ResNet50V2), fusion heads, losses and export."""
