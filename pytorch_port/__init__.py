"""gan_aec models ported to eager PyTorch: the reference our trained numbers and speed are compared
with (needs torch; not part of the gan_aec package)."""
