"""Exports of a cell's weights in the formats users load (`dreamsweep export`)."""
