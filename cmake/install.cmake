# Install rules come with the packaging work.
