"""Route 2 of garment design: the native SMIS/SPADE-family generator, its trainer (the "design_train" job) and
inference from a layout. Nothing heavy is imported here: torch loads with the modules that need it.

    config.py         DesignTrainConfig (the typed training settings)
    params.py         DesignTrainParams (the job's parameters)
    fgvc6.py, cache.py  the user's dataset in the FGVC6 layout, and its offline resize cache
    generator.py, discriminator.py, vgg.py, losses.py   the networks and the loss terms, from the papers
    trainer.py, checkpoint.py   one training step; safetensors checkpoints that resume bit for bit
    run.py            design_train_operation, generate_from_layout, list_design_models, read_losses
"""
