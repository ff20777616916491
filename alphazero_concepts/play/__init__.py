"""Use the networks in chess tools: a UCI engine (`uci`) and PGN game annotation with concept scores (`annotate`)."""
