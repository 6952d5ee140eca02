"""asyncio MariaDB clients (asyncmy, aiomysql) on the workload of SyncBridge's MariaDB benchmark.

Usage: python3 mariadb_asyncio.py DRIVER HOST PORT USER PASSWORD DATABASE TASKS SECONDS SQL EXPECTED_ROWS
Prints the queries per second. A pool of 8 connections serves TASKS tasks that run SQL in a loop
and read every row, like the Swift contenders.

The pools run in autocommit mode, as SyncBridge's connections do. Both drivers' pools default to
autocommit off: a SELECT on an InnoDB table then leaves a transaction open, and every release
rolls it back first, an extra round trip (asyncmy's 100-row rate falls tenfold that way).
"""
import asyncio
import sys
import time


async def main():
    driver, host, port, user, password, database, tasks, seconds, sql, expected = sys.argv[1:11]
    port, tasks, seconds, expected = int(port), int(tasks), float(seconds), int(expected)
    if driver == "asyncmy":
        import asyncmy
        pool = await asyncmy.create_pool(host=host, port=port, user=user, password=password, db=database,
                                         minsize=8, maxsize=8, autocommit=True)
    else:
        import aiomysql
        pool = await aiomysql.create_pool(host=host, port=port, user=user, password=password, db=database,
                                          minsize=8, maxsize=8, autocommit=True)
    deadline = time.monotonic() + seconds

    async def worker():
        count = 0
        while time.monotonic() < deadline:
            async with pool.acquire() as connection:
                async with connection.cursor() as cursor:
                    await cursor.execute(sql)
                    rows = await cursor.fetchall()
                    assert len(rows) == expected
            count += 1
        return count

    start = time.monotonic()
    counts = await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.monotonic() - start
    pool.close()
    await pool.wait_closed()
    print(sum(counts) / elapsed)


asyncio.run(main())
