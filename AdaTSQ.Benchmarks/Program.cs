using BenchmarkDotNet.Running;

// AdaTSQ.NET benchmarks. Examples:
//   dotnet run -c Release --project AdaTSQ.Benchmarks -- --filter '*QuantLinear*'
//   dotnet run -c Release --project AdaTSQ.Benchmarks -- --list flat
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
