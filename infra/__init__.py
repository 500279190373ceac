"""lowlat CDK constructs and stacks (see issue 5)."""
