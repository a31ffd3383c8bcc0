"""Files in and out: videos and frame images (`video`), checkpoints and shipped weights
(`checkpoint`), the paper's weights (`paper`), and writes that never leave half a file (`files`)."""
