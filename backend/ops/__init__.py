"""Operations tools: the CLI, the process supervisor, replicas, rehearsal, local proxy and the release gate."""
