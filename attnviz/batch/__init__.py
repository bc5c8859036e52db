"""Many inputs at once: the output plan, lanes that carry each input through every stage, the ordered writer."""
