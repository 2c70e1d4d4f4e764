return Updp.Cli.UpdpCli.Run(args);
