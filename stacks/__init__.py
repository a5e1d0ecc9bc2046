"""CDK stacks (deployment units) and constructs (logical units) of the federation."""
