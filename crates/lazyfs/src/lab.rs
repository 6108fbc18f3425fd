//! The power-cut lab driver (to be written by the lab's owner).
