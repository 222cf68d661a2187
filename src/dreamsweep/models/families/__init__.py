"""Model families: what differs between architectures (SD 1.x/2.x, SDXL, ...) lives here.

One module per family. A family turns prompts into one ``Conditioning`` value and says which
extra inputs its UNet takes, so training, sampling and export code need not know which
architecture they drive. So far only ``sdxl`` (its prompt encoding, used by the toy world XL);
SD 1.x/2.x and the call sites move onto the seam in a later step.
"""
