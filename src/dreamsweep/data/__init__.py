"""Loading and checking training images, and the bundled toy subject."""
