"""Audio shared by web and workers: the engine contract, codecs and formats, the live-audio stream."""
