Console.WriteLine("updp");
